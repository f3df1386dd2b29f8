"""The built-in mock job source: realistic job traffic with no app to point at."""
