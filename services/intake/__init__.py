"""intake: the one door for requests, with the service catalogue, the grid and residents."""
