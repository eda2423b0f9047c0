"""The one document: assembly, spool."""
