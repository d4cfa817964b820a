"""The data layer: event streams, event frames, video, simulated events and the dataset index."""
