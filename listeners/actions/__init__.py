from slack_bolt import App

from listeners.actions.check_connection import check_connection_callback
from listeners.replies import CHECK_CONNECTION_ACTION


def register(app: App) -> None:
    app.action(CHECK_CONNECTION_ACTION)(check_connection_callback)
