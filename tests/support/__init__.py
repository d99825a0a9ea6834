"""What tests share: starting the agent, writing configs, reading streams."""
