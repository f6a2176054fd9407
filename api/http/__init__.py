"""tutorledger.api.http."""
