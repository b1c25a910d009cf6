"""`mavera batch`: many prompts through the one streaming core, concurrently and resumably.

`items` reads and checks the input, `results` writes the result lines and reads them back to
resume, `pacing` keeps the starts inside the server's rate limit, `runner` runs the items.
"""
