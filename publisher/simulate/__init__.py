"""Realistic, signed WooCommerce webhook deliveries for demos, tests and load."""
