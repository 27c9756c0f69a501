"""The artifact store: one interface over a directory or an S3/MinIO bucket, opened by URL."""
