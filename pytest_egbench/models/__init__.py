"""Model construction and the split inference stages. torch and transformers live here."""
