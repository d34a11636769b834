namespace Fleet.IntegrationTests.Support;

/// <summary>Paths inside the repository this test assembly was built from.</summary>
public static class Repository
{
    /// <summary>The folder holding Fleet.sln, found upwards from the test's build output.</summary>
    public static string Root { get; } = FindRoot();

    public static string PathTo(params string[] parts) => Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Fleet.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException($"No Fleet.sln above {AppContext.BaseDirectory}.");
    }
}
