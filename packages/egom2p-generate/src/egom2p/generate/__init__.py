"""egom2p.generate"""
