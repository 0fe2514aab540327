"""The OnPrintShop database: mapping, reference schema, reads and writes."""
