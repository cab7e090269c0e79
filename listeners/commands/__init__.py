from slack_bolt import App

from listeners.commands.nonstop import nonstop_command_callback


def register(app: App) -> None:
    app.command("/nonstop")(nonstop_command_callback)
