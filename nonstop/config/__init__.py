"""Settings from the environment, checked before anything touches the network."""
