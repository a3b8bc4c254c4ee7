"""egom2p.train"""
