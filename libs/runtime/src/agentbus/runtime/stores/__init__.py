"""Clients and schemas of the stores that more than one service uses."""
