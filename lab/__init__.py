"""metal3-scale-lab: a Cluster API + Metal3 scale lab you can create, drive, measure and tear down."""

__version__ = "0.1.0"
