"""tutorledger.api.cli."""
