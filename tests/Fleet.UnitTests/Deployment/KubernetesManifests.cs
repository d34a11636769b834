using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using YamlDotNet.RepresentationModel;

namespace Fleet.UnitTests.Deployment;

/// <summary>One YAML document of a file under infra/k8s.</summary>
public sealed record K8sDocument(string File, string Text, YamlMappingNode Node)
{
    public string ApiVersion => Node.Text("apiVersion") ?? "";

    public string Kind => Node.Text("kind") ?? "";

    public string Name => Node.Text("metadata", "name") ?? "";

    public override string ToString() => $"{File}: {Kind} {Name}";
}

/// <summary>
/// Every manifest under infra/k8s. The core kinds are also read into KubernetesClient's models in strict mode, so
/// a misspelt or misplaced field fails like it would on <c>kubectl apply</c>'s schema validation.
/// </summary>
public static partial class KubernetesManifests
{
    public const string Folder = "infra/k8s";

    /// <summary>
    /// The example worker group (docs/worker-groups.md): a kustomize component, not in the base. Its resources are
    /// manifests like the rest; its kustomization and its patch of the API's ConfigMap are not whole objects.
    /// </summary>
    public const string GroupExample = "infra/k8s/groups/reports";

    /// <summary>YAML files under infra/k8s that are not Kubernetes objects.</summary>
    public static readonly string[] NotManifests =
    [
        "infra/k8s/kustomization.yaml", "infra/k8s/autoscaling/prometheus-adapter-values.yaml",
        $"{GroupExample}/kustomization.yaml", $"{GroupExample}/api-queues.yaml",
    ];

    /// <summary>The kinds KubernetesClient has models for (the rest, e.g. KEDA's ScaledObject, are read as YAML).</summary>
    public static readonly Dictionary<string, Type> CoreKinds = new(StringComparer.Ordinal)
    {
        ["v1/Namespace"] = typeof(V1Namespace),
        ["v1/ConfigMap"] = typeof(V1ConfigMap),
        ["v1/Secret"] = typeof(V1Secret),
        ["v1/Service"] = typeof(V1Service),
        ["apps/v1/Deployment"] = typeof(V1Deployment),
        ["batch/v1/Job"] = typeof(V1Job),
        ["policy/v1/PodDisruptionBudget"] = typeof(V1PodDisruptionBudget),
        ["autoscaling/v2/HorizontalPodAutoscaler"] = typeof(V2HorizontalPodAutoscaler),
        ["networking.k8s.io/v1/NetworkPolicy"] = typeof(V1NetworkPolicy),
    };

    private static readonly Lazy<IReadOnlyList<K8sDocument>> AllDocuments = new(Load);

    public static IReadOnlyList<K8sDocument> Documents => AllDocuments.Value;

    public static IEnumerable<string> Files =>
        Directory.EnumerateFiles(DeploymentFiles.PathOf(Folder), "*.y*ml", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(DeploymentFiles.Root, f).Replace('\\', '/'))
            .Order(StringComparer.Ordinal);

    public static K8sDocument Find(string kind, string name) =>
        Documents.SingleOrDefault(d => d.Kind == kind && d.Name == name) ?? throw new Xunit.Sdk.XunitException($"no {kind} {name} under {Folder}");

    public static T Typed<T>(K8sDocument document) => KubernetesYaml.Deserialize<T>(document.Text, strict: true);

    public static T Get<T>(string kind, string name) => Typed<T>(Find(kind, name));

    public static IEnumerable<T> All<T>(string kind) => Documents.Where(d => d.Kind == kind).Select(Typed<T>);

    /// <summary>Reads the document into its model (strict); fails naming the document.</summary>
    public static object ReadStrictly(K8sDocument document)
    {
        var type = CoreKinds[$"{document.ApiVersion}/{document.Kind}"];
        var read = typeof(KubernetesManifests).GetMethod(nameof(Typed))!.MakeGenericMethod(type);
        try
        {
            return read.Invoke(null, [document])!;
        }
        catch (System.Reflection.TargetInvocationException ex)
        {
            throw new Xunit.Sdk.XunitException($"{document}: {ex.InnerException?.Message}");
        }
    }

    /// <summary>The app a Deployment runs: its own, or the worker for a worker group's (<c>fleet-worker-NAME</c>).</summary>
    public static FleetApp AppOf(V1Deployment deployment) =>
        FleetApp.All.SingleOrDefault(a => a.Workload == deployment.Metadata.Name)
            ?? (deployment.Metadata.Name.StartsWith(FleetApp.Worker.Workload + "-", StringComparison.Ordinal) ? FleetApp.Worker
                : throw new Xunit.Sdk.XunitException($"Deployment {deployment.Metadata.Name} runs no known app"));

    /// <summary>The Deployment whose pods a selector picks; fails unless exactly one does.</summary>
    public static V1Deployment SelectedDeployment(IDictionary<string, string> selector, string by)
    {
        var matches = All<V1Deployment>("Deployment").Where(d => Selects(selector, d.Spec.Template.Metadata.Labels)).ToList();
        Assert.True(matches.Count == 1, $"{by} selects the pods of {matches.Count} Deployments ({string.Join(", ", matches.Select(m => m.Metadata.Name))}), not one");
        return matches[0];
    }

    public static bool Selects(IDictionary<string, string>? selector, IDictionary<string, string>? labels) =>
        selector is { Count: > 0 } && labels is not null && selector.All(s => labels.TryGetValue(s.Key, out var v) && v == s.Value);

    /// <summary>
    /// The environment a container gets: <c>envFrom</c> ConfigMaps and Secrets, then <c>env</c> (values, or keys of
    /// a ConfigMap or of the example Secret). Every referenced object and key must exist.
    /// </summary>
    public static Dictionary<string, string> EnvironmentOf(V1Container container, string where)
    {
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var source in container.EnvFrom ?? [])
        {
            var data = source.ConfigMapRef is { } map ? ConfigMapData(map.Name, where) : SecretData(source.SecretRef.Name, where);
            foreach (var (key, value) in data)
            {
                environment[key] = value;
            }
        }

        foreach (var variable in container.Env ?? [])
        {
            environment[variable.Name] = variable.Value
                ?? (variable.ValueFrom?.SecretKeyRef is { } secret ? Key(SecretData(secret.Name, where), secret.Key, $"{where}: Secret {secret.Name}")
                : variable.ValueFrom?.ConfigMapKeyRef is { } map ? Key(ConfigMapData(map.Name, where), map.Key, $"{where}: ConfigMap {map.Name}")
                : throw new Xunit.Sdk.XunitException($"{where}: {variable.Name} has neither a value nor a ConfigMap or Secret key"));
        }

        return environment;
    }

    /// <summary>The port a probe or Service names (by name or number) on a container; fails if it has none such.</summary>
    public static int ResolvePort(V1Container container, IntOrString port, string where)
    {
        var text = port.ToString();
        var match = int.TryParse(text, out var number)
            ? container.Ports.FirstOrDefault(p => p.ContainerPort == number)
            : container.Ports.FirstOrDefault(p => p.Name == text);
        Assert.True(match is not null, $"{where}: port '{text}' is not a port of container {container.Name}");
        return match!.ContainerPort;
    }

    public static IDictionary<string, string> ConfigMapData(string name, string where) =>
        Get<V1ConfigMap>("ConfigMap", name).Data ?? throw new Xunit.Sdk.XunitException($"{where}: ConfigMap {name} is empty");

    public static IDictionary<string, string> SecretData(string name, string where) =>
        Get<V1Secret>("Secret", name).StringData ?? throw new Xunit.Sdk.XunitException($"{where}: the example Secret {name} has no stringData");

    private static string Key(IDictionary<string, string> data, string key, string where) =>
        data.TryGetValue(key, out var value) ? value : throw new Xunit.Sdk.XunitException($"{where} has no key {key}");

    private static List<K8sDocument> Load()
    {
        var documents = new List<K8sDocument>();
        foreach (var file in Files.Where(f => !NotManifests.Contains(f)))
        {
            foreach (var text in DocumentSeparator().Split(DeploymentFiles.Read(file)))
            {
                var stream = new YamlStream();
                stream.Load(new StringReader(text));
                if (stream.Documents.FirstOrDefault()?.RootNode is YamlMappingNode node)
                {
                    documents.Add(new K8sDocument(file, text, node));
                }
            }
        }

        return documents;
    }

    [GeneratedRegex(@"^---\s*$", RegexOptions.Multiline)]
    private static partial Regex DocumentSeparator();
}
