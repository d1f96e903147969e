"""Helpers shared by the company's Python services."""
