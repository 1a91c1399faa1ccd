"""What is judged: the layer protocol and its loader, adapters for other layouts and styles, the fault catalogue."""
