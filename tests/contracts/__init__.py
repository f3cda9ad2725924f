"""The project's own descriptions of the Leap contracts it relies on, and their checks."""
