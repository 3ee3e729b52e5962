"""The Bridge-STG model: backbone adapter, heads, composition."""
