module github.com/eeveon/eeveon/examples/app

go 1.22
