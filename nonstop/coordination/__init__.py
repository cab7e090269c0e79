"""Coordination between processes of one app: each one's share of Slack's connections, membership, takeover."""
