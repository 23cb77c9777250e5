"""Plugins that ship inside the core (alert channels and the like); none names a provider."""
