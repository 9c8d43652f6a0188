module sortie.dev/services/workspace-operator

go 1.26.8

replace (
	sortie.dev/api => ../../api
	sortie.dev/services/kit => ../kit
)
