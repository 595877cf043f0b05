"""HTTP routes: thin — parse, call, encode."""
