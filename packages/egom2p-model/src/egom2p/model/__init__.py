"""egom2p.model"""
