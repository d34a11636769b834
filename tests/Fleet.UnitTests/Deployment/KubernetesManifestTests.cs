using System.Globalization;
using Fleet.Client;
using k8s.Models;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// infra/k8s against the code: names, labels, ports, probes and settings agree with what the processes do. No
/// cluster runs here; KubernetesClient's models stand in for the API server's schema check of the core kinds.
/// </summary>
public sealed class KubernetesManifestTests
{
    private const string Kustomization = "infra/k8s/kustomization.yaml";

    /// <summary>The reference broker: applied on its own, in its own namespace (not by the kustomization).</summary>
    private const string RabbitMqCluster = "infra/k8s/rabbitmq/rabbitmq-cluster.yaml";

    [Fact]
    public void EveryManifest_IsAKnownKind_AndTheCoreKindsMatchTheirSchemaFieldByField()
    {
        Assert.NotEmpty(KubernetesManifests.Documents);
        foreach (var document in KubernetesManifests.Documents)
        {
            Assert.False(string.IsNullOrEmpty(document.Name), $"{document}: no metadata.name");
            if (document.Kind is "ScaledObject" or "TriggerAuthentication")
            {
                Assert.Equal("keda.sh/v1alpha1", document.ApiVersion);
                continue;
            }

            if (document.Kind == "ServiceMonitor")
            {
                Assert.Equal("monitoring.coreos.com/v1", document.ApiVersion);
                continue;
            }

            if (document.Kind == "RabbitmqCluster")
            {
                Assert.Equal("rabbitmq.com/v1beta1", document.ApiVersion);
                continue;
            }

            Assert.True(KubernetesManifests.CoreKinds.ContainsKey($"{document.ApiVersion}/{document.Kind}"), $"{document}: unexpected kind {document.ApiVersion}/{document.Kind}");
            KubernetesManifests.ReadStrictly(document);
        }
    }

    [Fact]
    public void TheKustomization_ListsEveryManifest_ButTheExamples_AndMapsTheImages()
    {
        var kustomization = DeploymentFiles.LoadYaml(Kustomization).Single();
        var listed = kustomization.Items("resources").Select(r => $"{KubernetesManifests.Folder}/{r}").ToList();

        Assert.All(listed, r => Assert.True(DeploymentFiles.Exists(r), $"{Kustomization}: {r} does not exist"));
        string[] alternatives = ["infra/k8s/secret.example.yaml", "infra/k8s/autoscaling/hpa.yaml", RabbitMqCluster];
        var expected = KubernetesManifests.Files.Except(KubernetesManifests.NotManifests).Except(alternatives)
            .Where(f => !f.StartsWith(KubernetesManifests.GroupExample + "/", StringComparison.Ordinal));
        Assert.Equal(expected.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));

        // Kustomize's images: entries rewrite exactly the images the workloads use, one per app image.
        var images = kustomization.Items("images").Select(i => i.Text("name")).ToList();
        Assert.Equal(FleetApp.All.Select(a => a.Image).Order(StringComparer.Ordinal), images.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("api")]
    [InlineData("worker")]
    public void TheDeployment_SelectsItsOwnPods_AndRunsTheAppsImage_OnThePortTheAppListensOn(string name)
    {
        var app = FleetApp.Named(name);
        var deployment = KubernetesManifests.Get<V1Deployment>("Deployment", app.Workload);
        var pod = deployment.Spec.Template;
        var container = Assert.Single(pod.Spec.Containers);

        Assert.True(KubernetesManifests.Selects(deployment.Spec.Selector.MatchLabels, pod.Metadata.Labels), $"{app.Workload}: the selector does not match the pod labels");
        Assert.Equal(app.Workload, KubernetesManifests.SelectedDeployment(deployment.Spec.Selector.MatchLabels, $"{app.Workload}'s selector").Metadata.Name);
        Assert.Equal(app.Image, container.Image.Split(':')[0]);

        var environment = KubernetesManifests.EnvironmentOf(container, app.Workload);
        var port = app.ListenPort(environment);
        Assert.Equal(port, Assert.Single(container.Ports).ContainerPort);
        Assert.Equal("http", container.Ports[0].Name);
        if (app == FleetApp.Worker)
        {
            Assert.Equal(port.ToString(CultureInfo.InvariantCulture), pod.Metadata.Annotations["prometheus.io/port"]);
            Assert.Equal("/metrics", pod.Metadata.Annotations["prometheus.io/path"]);
        }
    }

    [Theory]
    [InlineData("api")]
    [InlineData("worker")]
    public void TheProbes_AskAliveForLiveness_AndHealthForReadiness_OnTheAppsPort(string name)
    {
        var app = FleetApp.Named(name);
        var container = KubernetesManifests.Get<V1Deployment>("Deployment", app.Workload).Spec.Template.Spec.Containers.Single();
        var port = app.ListenPort(KubernetesManifests.EnvironmentOf(container, app.Workload));

        // /alive: the process answers (src/Fleet.ServiceDefaults, src/Fleet.Api). /health: the servers answer too.
        foreach (var (probe, path) in new[] { (container.StartupProbe, "/alive"), (container.LivenessProbe, "/alive"), (container.ReadinessProbe, "/health") })
        {
            Assert.NotNull(probe);
            Assert.Equal(path, probe.HttpGet.Path);
            Assert.Equal(port, KubernetesManifests.ResolvePort(container, probe.HttpGet.Port, $"{app.Workload} probe {path}"));
        }
    }

    [Theory]
    [InlineData("api")]
    [InlineData("worker")]
    [InlineData("migrator")]
    public void ThePods_RunAsNonRoot_WithSettingsTheAppReallyReads(string name)
    {
        var app = FleetApp.Named(name);
        var pod = app == FleetApp.Migrator
            ? KubernetesManifests.Get<V1Job>("Job", app.Workload).Spec.Template.Spec
            : KubernetesManifests.Get<V1Deployment>("Deployment", app.Workload).Spec.Template.Spec;
        var container = Assert.Single(pod.Containers);

        Assert.True(pod.SecurityContext.RunAsNonRoot);
        Assert.True(pod.SecurityContext.RunAsUser > 0);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(app.Image, container.Image.Split(':')[0]);

        var environment = KubernetesManifests.EnvironmentOf(container, app.Workload);
        if (app == FleetApp.Worker)
        {
            AppEnvironment.Worker(environment, app.Workload);
        }
        else if (app == FleetApp.Api)
        {
            AppEnvironment.Api(environment, app.Workload);
        }
        else
        {
            Assert.Equal("fleet", AppEnvironment.Migrator(environment, app.Workload).Database);
        }
    }

    [Fact]
    public void Workers_GetMoreTimeToStopThanTheirDrainAndShutdown()
    {
        var pod = KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Worker.Workload).Spec.Template.Spec;
        var (options, shutdown) = AppEnvironment.Worker(KubernetesManifests.EnvironmentOf(pod.Containers.Single(), "fleet-worker"), "fleet-worker");

        Assert.True(pod.TerminationGracePeriodSeconds > shutdown.TotalSeconds,
            $"terminationGracePeriodSeconds {pod.TerminationGracePeriodSeconds} must exceed the worker's shutdown timeout {shutdown.TotalSeconds} s (Worker:DrainSeconds {options.DrainSeconds} + 15 s)");
        Assert.True(pod.TerminationGracePeriodSeconds > options.DrainSeconds);
    }

    [Fact]
    public void TheWorkersCpu_RequestAndLimit_EqualItsCpuConcurrency()
    {
        var container = KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Worker.Workload).Spec.Template.Spec.Containers.Single();
        var options = AppEnvironment.Worker(KubernetesManifests.EnvironmentOf(container, "fleet-worker"), "fleet-worker").Worker;

        Assert.Equal(options.CpuConcurrency, container.Resources.Requests["cpu"].ToDecimal());
        Assert.Equal(options.CpuConcurrency, container.Resources.Limits["cpu"].ToDecimal());
        Assert.True(container.Resources.Limits.ContainsKey("memory"));
    }

    [Fact]
    public void EveryService_SelectsOneDeployment_AndTargetsAPortOfItsContainer()
    {
        var services = KubernetesManifests.All<V1Service>("Service").ToList();
        Assert.Contains(services, s => s.Metadata.Name == "fleet-api");
        Assert.Contains(services, s => s.Metadata.Name == "fleet-worker-metrics" && s.Spec.ClusterIP == "None");

        foreach (var service in services)
        {
            var deployment = KubernetesManifests.SelectedDeployment(service.Spec.Selector, $"Service {service.Metadata.Name}");
            var container = deployment.Spec.Template.Spec.Containers.Single();
            var app = FleetApp.All.Single(a => a.Workload == deployment.Metadata.Name);
            foreach (var port in service.Spec.Ports)
            {
                var target = KubernetesManifests.ResolvePort(container, port.TargetPort, $"Service {service.Metadata.Name}");
                Assert.Equal(app.ListenPort(KubernetesManifests.EnvironmentOf(container, app.Workload)), target);
            }
        }
    }

    [Fact]
    public void TheDisruptionBudgets_SelectTheirOwnPods()
    {
        var budgets = KubernetesManifests.All<V1PodDisruptionBudget>("PodDisruptionBudget").ToDictionary(b => b.Metadata.Name);

        Assert.Equal("fleet-worker", KubernetesManifests.SelectedDeployment(budgets["fleet-worker"].Spec.Selector.MatchLabels, "PodDisruptionBudget fleet-worker").Metadata.Name);
        Assert.Equal("fleet-api", KubernetesManifests.SelectedDeployment(budgets["fleet-api"].Spec.Selector.MatchLabels, "PodDisruptionBudget fleet-api").Metadata.Name);
        Assert.NotNull(budgets["fleet-worker"].Spec.MaxUnavailable);
    }

    [Fact]
    public void TheMigratorJob_RunsFleetMigrateOnce()
    {
        var job = KubernetesManifests.Get<V1Job>("Job", FleetApp.Migrator.Workload);
        var container = job.Spec.Template.Spec.Containers.Single();

        Assert.Equal("migrate", container.Args[0]);
        Assert.Null(container.Command);
        Assert.Contains(job.Spec.Template.Spec.RestartPolicy, new[] { "Never", "OnFailure" });
        Assert.True(job.Spec.BackoffLimit > 0);
    }

    [Fact]
    public void TheScaledObject_ScalesTheWorkerDeployment_OnTheApisDesiredWorkers()
    {
        var scaled = KubernetesManifests.Find("ScaledObject", "fleet-worker").Node;

        Assert.Equal(("apps/v1", "Deployment", FleetApp.Worker.Workload),
            (scaled.Text("spec", "scaleTargetRef", "apiVersion"), scaled.Text("spec", "scaleTargetRef", "kind"), scaled.Text("spec", "scaleTargetRef", "name")));
        var trigger = Assert.Single(scaled.Items("spec", "triggers"));
        Assert.Equal("prometheus", trigger.Text("type"));
        Assert.Equal("AverageValue", trigger.Text("metricType"));
        Assert.Equal("1", trigger.Text("metadata", "threshold"));
        Assert.Equal("false", trigger.Text("metadata", "ignoreNullValues"));

        // The signal is the API's fleet_desired_workers; every API replica exports it, so max, never sum.
        var query = trigger.Text("metadata", "query")!;
        Assert.Equal(["fleet_desired_workers"], ExportedMetrics.NamesIn(query));
        Assert.StartsWith("max(", query, StringComparison.Ordinal);
        Assert.True(int.Parse(scaled.Text("spec", "minReplicaCount")!, CultureInfo.InvariantCulture) >= 1);
    }

    [Fact]
    public void TheHpaAlternative_ScalesTheWorkerDeployment_OnTheMetricTheAdapterRulePublishes()
    {
        var hpa = KubernetesManifests.Get<V2HorizontalPodAutoscaler>("HorizontalPodAutoscaler", "fleet-worker");
        Assert.Equal(("apps/v1", "Deployment", FleetApp.Worker.Workload), (hpa.Spec.ScaleTargetRef.ApiVersion, hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name));
        var metric = Assert.Single(hpa.Spec.Metrics);
        Assert.Equal("External", metric.Type);
        Assert.Equal(("AverageValue", 1m), (metric.External.Target.Type, metric.External.Target.AverageValue.ToDecimal()));

        var rule = Assert.Single(DeploymentFiles.LoadYaml("infra/k8s/autoscaling/prometheus-adapter-values.yaml").Single().Items("rules", "external"));
        Assert.Equal(metric.External.Metric.Name, rule.Text("name", "as"));
        Assert.Equal(["fleet_desired_workers"], ExportedMetrics.NamesIn(rule.Text("seriesQuery")!));
        Assert.StartsWith("max(", rule.Text("metricsQuery"), StringComparison.Ordinal);
    }

    /// <summary>The broker refuses a declare whose arguments differ from the queue's: the API and the workers agree, on quorum.</summary>
    [Fact]
    public void TheLanes_AreQuorumQueues_ForTheApiAndTheWorkersAlike()
    {
        foreach (var app in new[] { FleetApp.Api, FleetApp.Worker })
        {
            var container = Assert.Single(KubernetesManifests.Get<V1Deployment>("Deployment", app.Workload).Spec.Template.Spec.Containers);
            var environment = KubernetesManifests.EnvironmentOf(container, app.Workload);

            Assert.Equal("quorum", environment.GetValueOrDefault("RabbitMq__QueueType"));
            Assert.Equal(BrokerQueueType.Quorum, AppEnvironment.QueueType(environment));
        }
    }

    [Fact]
    public void TheRabbitMqClusterReference_RunsThreeNodes_ThatPauseInAMinority_AndLoadFleetsDefinitions()
    {
        var document = Assert.Single(KubernetesManifests.Documents, d => d.File == RabbitMqCluster);
        var spec = document.Node.Map("spec");

        Assert.Equal("RabbitmqCluster", document.Kind);
        Assert.Equal("3", spec.Text("replicas"));
        // network-policy.yaml denies the fleet namespace's pods everything but Fleet's own traffic: not the nodes' clustering.
        Assert.NotEqual(DeploymentFiles.LoadYaml(Kustomization).Single().Text("namespace"), document.Node.Text("metadata", "namespace"));
        Assert.Equal(spec.Map("resources", "requests").Scalars(), spec.Map("resources", "limits").Scalars());
        Assert.Equal("kubernetes.io/hostname", spec.Items("affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution").Single().Text("topologyKey"));

        var config = ConfigLines(spec.Text("rabbitmq", "additionalConfig") ?? "");
        Assert.Equal("pause_minority", config["cluster_partition_handling"]);
        // Fleet keeps every task's time limit under the broker's consumer_timeout: the same value as the local and compose nodes.
        Assert.Equal(ConfigLines(DeploymentFiles.Read("infra/rabbitmq/rabbitmq.conf"))["consumer_timeout"], config["consumer_timeout"]);

        // load_definitions names a file of the volume mounted from the definitions Secret.
        var pod = spec.Map("override", "statefulSet", "spec", "template", "spec");
        var mount = pod.Items("containers").Single(c => c.Text("name") == "rabbitmq").Items("volumeMounts").Single();
        var volume = pod.Items("volumes").Single(v => v.Text("name") == mount.Text("name"));
        Assert.Equal($"{mount.Text("mountPath")}/definitions.json", config["load_definitions"]);
        Assert.Equal("fleet-rabbitmq-definitions", volume.Text("secret", "secretName"));
    }

    /// <summary>The API and the workers name each node of the reference cluster (its pods, through the nodes' headless Service).</summary>
    [Theory]
    [InlineData("api.rabbitmq")]
    [InlineData("worker.rabbitmq")]
    public void TheBrokerAddresses_ListTheThreeNodesOfTheReferenceCluster(string key)
    {
        var cluster = Assert.Single(KubernetesManifests.Documents, d => d.File == RabbitMqCluster);
        var (name, ns) = (cluster.Name, cluster.Node.Text("metadata", "namespace"));
        var secret = KubernetesManifests.Get<V1Secret>("Secret", "fleet-secrets");

        var hosts = System.Text.RegularExpressions.Regex.Match(secret.StringData[key], "^amqps?://[^@/]+@(?<hosts>[^/]+)/fleet$").Groups["hosts"].Value;
        Assert.Equal(Enumerable.Range(0, 3).Select(i => $"{name}-server-{i}.{name}-nodes.{ns}.svc:5672"), hosts.Split(','));
    }

    private static Dictionary<string, string> ConfigLines(string rabbitmqConf) =>
        rabbitmqConf.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#') && l.Contains('='))
            .Select(l => l.Split('=', 2)).ToDictionary(p => p[0].Trim(), p => p[1].Trim(), StringComparer.Ordinal);

    [Fact]
    public void TheSecretExample_HoldsPlaceholdersOnly()
    {
        var secret = KubernetesManifests.Get<V1Secret>("Secret", "fleet-secrets");

        Assert.NotEmpty(secret.StringData);
        Assert.Null(secret.Data);
        Assert.All(secret.StringData, e => Assert.Contains("CHANGE_ME", e.Value, StringComparison.Ordinal));
    }

    [Fact]
    public void EveryWorkload_IsLabelledWithItsName_AndOnlyTheWorkersAreScrapedByAnnotation()
    {
        foreach (var deployment in KubernetesManifests.All<V1Deployment>("Deployment"))
        {
            Assert.Equal(deployment.Metadata.Name, deployment.Metadata.Labels["app.kubernetes.io/name"]);
            Assert.Equal(deployment.Metadata.Name, deployment.Spec.Template.Metadata.Labels["app.kubernetes.io/name"]);
        }

        // Annotation-based discovery sends no key: the API's /metrics (read scope) is scraped by the ServiceMonitor.
        Assert.Equal("true", KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Worker.Workload).Spec.Template.Metadata.Annotations["prometheus.io/scrape"]);
        Assert.Null(KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Api.Workload).Spec.Template.Metadata.Annotations);

        Assert.Null(KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Worker.Workload).Spec.Replicas);
    }

    [Fact]
    public void TheApi_NeedsAKeyForReads_AndHasAKeyForEachScope()
    {
        var container = Assert.Single(KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Api.Workload).Spec.Template.Spec.Containers);

        var api = AppEnvironment.Api(KubernetesManifests.EnvironmentOf(container, FleetApp.Api.Workload), FleetApp.Api.Workload);

        Assert.True(api.ReadsRequireKey);
        Assert.NotEmpty(api.ReadKeys);
        Assert.NotEmpty(api.ApiKeys);
        Assert.NotEmpty(api.AdminKeys);
    }

    [Fact]
    public void PrometheusScrapesTheApi_ThroughItsService_WithAReadKeyTheApiHolds()
    {
        var monitor = KubernetesManifests.Find("ServiceMonitor", "fleet-api").Node;
        var service = KubernetesManifests.Get<V1Service>("Service", "fleet-api");
        var selector = monitor.Map("spec", "selector", "matchLabels").Scalars();

        Assert.True(KubernetesManifests.Selects(selector, service.Metadata.Labels), "the ServiceMonitor does not select the fleet-api Service");
        var endpoint = Assert.Single(monitor.Items("spec", "endpoints"));
        Assert.Contains(service.Spec.Ports, p => p.Name == endpoint.Text("port"));
        Assert.Equal("/metrics", endpoint.Text("path"));
        Assert.Equal("Bearer", endpoint.Text("authorization", "type"));

        // The secret key it sends is one the API reads as a read key.
        var (secret, key) = (endpoint.Text("authorization", "credentials", "name"), endpoint.Text("authorization", "credentials", "key"));
        var container = Assert.Single(KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Api.Workload).Spec.Template.Spec.Containers);
        var variable = Assert.Single(container.Env, e => e.ValueFrom?.SecretKeyRef is { } r && r.Name == secret && r.Key == key);
        Assert.StartsWith("Api__ReadKeys__", variable.Name, StringComparison.Ordinal);
    }

    [Fact]
    public void TheNetworkPolicies_DenyByDefault_AndOpenOnlyTheApisPort_AndTheWorkersMetricsToMonitoring()
    {
        var policies = KubernetesManifests.All<V1NetworkPolicy>("NetworkPolicy").ToList();
        var deployments = KubernetesManifests.All<V1Deployment>("Deployment").ToList();

        // Default deny: an empty selector (every pod of the namespace), both directions, no rule.
        var deny = Assert.Single(policies, p => p.Metadata.Name == "fleet-default-deny");
        Assert.Empty(deny.Spec.PodSelector.MatchLabels ?? new Dictionary<string, string>());
        Assert.Equal(["Egress", "Ingress"], deny.Spec.PolicyTypes.Order(StringComparer.Ordinal));
        Assert.Null(deny.Spec.Ingress);
        Assert.Null(deny.Spec.Egress);

        // Ingress: the API's HTTP port; the workers' metrics port from the monitoring namespace (the example
        // group's workers have a policy of their own, WorkerGroupManifestTests); nothing else.
        var ingress = policies.Where(p => p.Spec.Ingress is { Count: > 0 })
            .Where(p => FleetApp.All.Any(a => a.Workload == KubernetesManifests.SelectedDeployment(p.Spec.PodSelector.MatchLabels, p.Metadata.Name).Metadata.Name))
            .ToList();
        Assert.Equal(2, ingress.Count);
        var apiPolicy = Assert.Single(ingress, p => KubernetesManifests.SelectedDeployment(p.Spec.PodSelector.MatchLabels, p.Metadata.Name).Metadata.Name == FleetApp.Api.Workload);
        var apiContainer = Assert.Single(deployments.Single(d => d.Metadata.Name == FleetApp.Api.Workload).Spec.Template.Spec.Containers);
        var apiPort = FleetApp.Api.ListenPort(KubernetesManifests.EnvironmentOf(apiContainer, FleetApp.Api.Workload));
        Assert.Equal([apiPort], apiPolicy.Spec.Ingress.SelectMany(r => r.Ports).Select(p => KubernetesManifests.ResolvePort(apiContainer, p.Port, apiPolicy.Metadata.Name)));

        var workerPolicy = Assert.Single(ingress, p => KubernetesManifests.SelectedDeployment(p.Spec.PodSelector.MatchLabels, p.Metadata.Name).Metadata.Name == FleetApp.Worker.Workload);
        var workerContainer = Assert.Single(deployments.Single(d => d.Metadata.Name == FleetApp.Worker.Workload).Spec.Template.Spec.Containers);
        var metricsPort = FleetApp.Worker.ListenPort(KubernetesManifests.EnvironmentOf(workerContainer, FleetApp.Worker.Workload));
        var rule = Assert.Single(workerPolicy.Spec.Ingress);
        Assert.Equal([metricsPort], rule.Ports.Select(p => KubernetesManifests.ResolvePort(workerContainer, p.Port, workerPolicy.Metadata.Name)));
        var from = Assert.Single(rule.FromProperty);
        Assert.Null(from.PodSelector);
        Assert.Null(from.IpBlock);
        Assert.Equal("monitoring", from.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]);

        // Egress: each workload reaches the servers its own settings name, and only DNS and the servers' ports at all.
        foreach (var (deployment, app, container) in deployments.Select(d => (d, KubernetesManifests.AppOf(d), Assert.Single(d.Spec.Template.Spec.Containers))))
        {
            var labels = deployment.Spec.Template.Metadata.Labels;
            var allowed = policies
                .Where(p => p.Spec.PodSelector.MatchLabels is not { Count: > 0 } || KubernetesManifests.Selects(p.Spec.PodSelector.MatchLabels, labels))
                .SelectMany(p => p.Spec.Egress ?? [])
                .SelectMany(r => r.Ports)
                .Select(p => int.Parse(p.Port.ToString(), CultureInfo.InvariantCulture))
                .ToHashSet();
            var environment = KubernetesManifests.EnvironmentOf(container, deployment.Metadata.Name);
            var needed = new List<int>
            {
                53,
                new Npgsql.NpgsqlConnectionStringBuilder(environment["ConnectionStrings__fleetdb"]).Port,
                Fleet.Client.RabbitMqAddress.Parse(environment["ConnectionStrings__rabbitmq"]).Port,
            };
            if (environment.TryGetValue("Api__RabbitMqManagementUri", out var management))
            {
                needed.Add(new Uri(management).Port);
            }

            Assert.Superset(needed.ToHashSet(), allowed);
            Assert.Subset(new HashSet<int> { 53, 5432, 5671, 5672, 15671, 15672 }, allowed);
        }
    }
}
