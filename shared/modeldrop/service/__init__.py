"""The service layer: handlers that use the domain through ports, never a cloud SDK directly."""
