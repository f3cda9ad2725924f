"""What the product knows of Leap: the wire names, the Connect entry model, the API port."""
