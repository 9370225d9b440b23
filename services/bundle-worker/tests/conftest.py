"""Bundle worker test fixtures."""
