"""Command line: thin wrappers that parse options, call the library, and print or plot. No maths here."""
