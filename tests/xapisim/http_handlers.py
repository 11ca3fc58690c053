"""XAPI's HTTP data handlers: /import_raw_vdi, /export_raw_vdi, /export_metadata, /import_metadata."""
