using System.Globalization;
using System.Text.RegularExpressions;
using Fleet.Api;
using Fleet.Client;
using Fleet.Contracts;
using k8s;
using k8s.Models;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// The example worker group under infra/k8s/groups/ (docs/worker-groups.md), a kustomize component: its resources
/// are checked with the base's by <see cref="KubernetesManifestTests"/> (schema, labels, network policies); here,
/// what makes it a group: a worker that is fleet-worker's pod serving only its queue, the API declaring that queue,
/// and KEDA scaling the worker on that queue's depth.
/// </summary>
public sealed partial class WorkerGroupManifestTests
{
    private const string Component = KubernetesManifests.GroupExample + "/kustomization.yaml";
    private const string ApiPatch = KubernetesManifests.GroupExample + "/api-queues.yaml";
    private const string Worker = "fleet-worker-reports";

    [Fact]
    public void TheExample_IsAComponent_OfEveryFileOfItsFolder_AndNotEnabledByDefault()
    {
        var component = DeploymentFiles.LoadYaml(Component).Single();
        Assert.Equal(("kustomize.config.k8s.io/v1alpha1", "Component"), (component.Text("apiVersion"), component.Text("kind")));

        var listed = component.Items("resources").Select(r => r.ToString())
            .Concat(component.Items("patches").Select(p => p.Text("path")!))
            .Select(f => $"{KubernetesManifests.GroupExample}/{f}");
        var files = KubernetesManifests.Files.Where(f => f.StartsWith(KubernetesManifests.GroupExample + "/", StringComparison.Ordinal) && f != Component);
        Assert.Equal(files.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));

        var root = DeploymentFiles.LoadYaml("infra/k8s/kustomization.yaml").Single();
        Assert.Empty(root.Items("components"));
    }

    [Fact]
    public void TheGroupsWorker_IsFleetWorkersPod_ServingOnlyItsQueue()
    {
        var group = KubernetesManifests.Get<V1Deployment>("Deployment", Worker);
        var fleetWorker = KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Worker.Workload);
        Assert.Equal(Worker, KubernetesManifests.SelectedDeployment(group.Spec.Selector.MatchLabels, $"{Worker}'s selector").Metadata.Name);
        Assert.Null(group.Spec.Replicas);

        // The same pod but for its labels, scheduling and the queue list: image, settings, logins, probes, limits, security.
        var (pod, reference) = (group.Spec.Template.Spec, fleetWorker.Spec.Template.Spec);
        var (container, referenceContainer) = (Assert.Single(pod.Containers), Assert.Single(reference.Containers));
        Assert.Equal(Json(reference.SecurityContext), Json(pod.SecurityContext));
        Assert.Equal(reference.TerminationGracePeriodSeconds, pod.TerminationGracePeriodSeconds);
        Assert.Equal(Json(reference.Volumes), Json(pod.Volumes));
        container.Env = [.. container.Env.Where(e => !e.Name.StartsWith("Worker__Queues__", StringComparison.Ordinal))];
        Assert.Equal(Json(referenceContainer), Json(container));

        var environment = KubernetesManifests.EnvironmentOf(Assert.Single(KubernetesManifests.Get<V1Deployment>("Deployment", Worker).Spec.Template.Spec.Containers), Worker);
        Assert.Equal(["reports"], AppEnvironment.Worker(environment, Worker).Worker.Queues);

        // Its own budget and metrics policy, which fleet-worker's do not cover.
        Assert.Equal(Worker, KubernetesManifests.SelectedDeployment(KubernetesManifests.Get<V1PodDisruptionBudget>("PodDisruptionBudget", Worker).Spec.Selector.MatchLabels, "its budget").Metadata.Name);
        var metrics = Assert.Single(KubernetesManifests.All<V1NetworkPolicy>("NetworkPolicy"), p => p.Spec.Ingress is { Count: > 0 } && KubernetesManifests.Selects(p.Spec.PodSelector.MatchLabels, group.Spec.Template.Metadata.Labels));
        var metricsPolicy = KubernetesManifests.Get<V1NetworkPolicy>("NetworkPolicy", "fleet-worker-metrics");
        Assert.Equal(Json(metricsPolicy.Spec.Ingress), Json(metrics.Spec.Ingress));
    }

    /// <summary>The component patches the API's ConfigMap: the API declares the queue the group's worker serves.</summary>
    [Fact]
    public void TheApi_DeclaresTheGroupsQueue_WithALane()
    {
        var patch = KubernetesYaml.Deserialize<V1ConfigMap>(DeploymentFiles.Read(ApiPatch), strict: true);
        var api = KubernetesManifests.Get<V1Deployment>("Deployment", FleetApp.Api.Workload);
        var container = Assert.Single(api.Spec.Template.Spec.Containers);
        Assert.Contains(container.EnvFrom, e => e.ConfigMapRef?.Name == patch.Metadata.Name);

        var declared = patch.Data.ToDictionary(d => QueueKey().Match(d.Key) is { Success: true } m ? m.Groups[1].Value : throw new Xunit.Sdk.XunitException($"{ApiPatch}: {d.Key} is not Api__Queues__NAME"), d => d.Value);
        Assert.All(declared, q =>
        {
            Assert.Matches("^[a-z][a-z0-9-]{0,62}$", q.Key);
            Assert.DoesNotContain(q.Key, TaskQueues.All.Append(TaskQueues.Control));
            Assert.Contains(q.Value, new[] { "cpu", "io" });
        });
        var environment = KubernetesManifests.EnvironmentOf(Assert.Single(KubernetesManifests.Get<V1Deployment>("Deployment", Worker).Spec.Template.Spec.Containers), Worker);
        Assert.Equal(AppEnvironment.Worker(environment, Worker).Worker.Queues, declared.Keys);

        // The API as it starts with the patch applied (kustomize merges the ConfigMap's data): its options accept it.
        var patched = KubernetesManifests.EnvironmentOf(container, FleetApp.Api.Workload);
        foreach (var (key, value) in patch.Data)
        {
            patched[key] = value;
        }

        Assert.Equal(declared, AppEnvironment.Api(patched, $"{FleetApp.Api.Workload} with {ApiPatch}").Queues);
    }

    [Fact]
    public void TheScaledObject_ScalesTheGroupsWorker_OnItsQueuesDepth()
    {
        var scaled = KubernetesManifests.Find("ScaledObject", Worker).Node;
        Assert.Equal(("apps/v1", "Deployment", Worker),
            (scaled.Text("spec", "scaleTargetRef", "apiVersion"), scaled.Text("spec", "scaleTargetRef", "kind"), scaled.Text("spec", "scaleTargetRef", "name")));
        Assert.True(int.Parse(scaled.Text("spec", "minReplicaCount")!, CultureInfo.InvariantCulture) >= 0);

        var container = Assert.Single(KubernetesManifests.Get<V1Deployment>("Deployment", Worker).Spec.Template.Spec.Containers);
        var environment = KubernetesManifests.EnvironmentOf(container, Worker);
        var worker = AppEnvironment.Worker(environment, Worker).Worker;
        var queue = Assert.Single(worker.Queues);
        var triggers = scaled.Items("spec", "triggers").ToList();

        // The queue and its dispatch queue, in the broker's vhost, counted with the unacknowledged messages (http).
        Assert.Equal([queue, TaskQueues.DispatchQueueOf(queue)], triggers.Select(t => t.Text("metadata", "queueName")));
        var vhost = RabbitMqAddress.Parse(environment["ConnectionStrings__rabbitmq"]).VirtualHost;
        foreach (var trigger in triggers)
        {
            Assert.Equal(("rabbitmq", "QueueLength", "http", vhost), (trigger.Text("type"), trigger.Text("metadata", "mode"), trigger.Text("metadata", "protocol"), trigger.Text("metadata", "vhostName")));
            Assert.Equal(worker.CpuConcurrency, int.Parse(trigger.Text("metadata", "value")!, CultureInfo.InvariantCulture));

            // KEDA signs in to the management API with the API's management URI (the only such key of the Secret).
            var authentication = KubernetesManifests.Find("TriggerAuthentication", trigger.Text("authenticationRef", "name")!).Node;
            var host = Assert.Single(authentication.Items("spec", "secretTargetRef"));
            Assert.Equal("host", host.Text("parameter"));
            var uri = new Uri(Assert.Contains(host.Text("key")!, KubernetesManifests.SecretData(host.Text("name")!, Worker)));
            Assert.Equal((Uri.UriSchemeHttp, "/"), (uri.Scheme, uri.AbsolutePath));
            Assert.Equal("Api__RabbitMqManagementUri", host.Text("key"));
        }
    }

    private static string Json(object? value) => KubernetesJson.Serialize(value);

    [GeneratedRegex("^Api__Queues__(.+)$")]
    private static partial Regex QueueKey();
}
