"""Real-time: WebSocket connections, their topic subscriptions, and fan-out of messages to them."""
