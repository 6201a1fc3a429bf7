"""Reading chest X-rays and writing outputs safely."""
