"""The links to Slack: one WebSocket (`link`), how its frames are written (`frames`), how a URL is obtained
(`tickets`), Slack's connection budget (`budget`) and the one door every connection attempt goes through
(`gate`)."""
