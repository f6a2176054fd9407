"""tutorledger.api."""
