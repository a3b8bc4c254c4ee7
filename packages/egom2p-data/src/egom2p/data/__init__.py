"""egom2p.data"""
