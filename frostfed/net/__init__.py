"""Transport: authenticated channels, reliable delivery and echo broadcast."""
