"""Running a Bolt app: its listeners in lanes of their own, and knowing when an event's work is finished."""
