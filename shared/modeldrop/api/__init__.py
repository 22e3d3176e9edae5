"""The api function: status of every deployment, and (later) the proxy to their endpoints."""
