from slack_bolt import App

from listeners import actions, commands, errors, events


def register_listeners(app: App) -> None:
    """Bind every listener Nonstop has to `app`; app.py calls this once before connecting."""
    events.register(app)
    commands.register(app)
    actions.register(app)
    errors.register(app)
