"""The gRPC recommender: feed logic (feeds.py), proto edge (servicer.py), process (server.py)."""
