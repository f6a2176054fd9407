"""tutorledger.infra.importers."""
