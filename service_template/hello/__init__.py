"""hello: a Tornado service made from the tornado-operator service template."""

# The scaffold rewrites these three lines for a new service.
SERVICE_NAME = "hello"
IMAGE = "tornado-operator/service-template"
__version__ = "0.1.0"
