"""tutorledger.projections."""
