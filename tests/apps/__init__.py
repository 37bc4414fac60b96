"""Small applications and helpers the propagation tests serve and call."""
