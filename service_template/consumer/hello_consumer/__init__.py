"""hello_consumer: a stream consumer made from the tornado-operator consumer template."""

# The scaffold rewrites these three lines for a new service.
SERVICE_NAME = "hello-consumer"
IMAGE = "tornado-operator/consumer-template"
__version__ = "0.1.0"
