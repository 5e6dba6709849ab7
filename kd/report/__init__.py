"""The report stage: results files, tables and charts; number formatting."""
