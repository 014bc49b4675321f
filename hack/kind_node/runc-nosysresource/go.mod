module local/runc-nosysresource

go 1.24
