using System;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text;
using Xunit;
using PeerLink.Testing;

namespace PeerLink.Tests.PublicApi;

/// <summary>
/// The public surface of each package, compared with the approved listing in TestData/api (the same idea as Kestrel's
/// PublicAPI files, whose analyzer is not in this package feed). A change to the surface must change the listing in
/// the same commit; the test prints the new listing to copy in.
/// </summary>
public sealed class PublicApiTests
{
    [Theory]
    [InlineData("PeerLink")]
    [InlineData("PeerLink.Nat")]
    [InlineData("PeerLink.Discovery")]
    [InlineData("PeerLink.Rendezvous.Nats")]
    public void ThePublicSurfaceIsTheApprovedOne(string assemblyName)
    {
        string actual = Describe(Assembly.Load(assemblyName));
        string path = TestFiles.PathOf($"api/{assemblyName}.txt");
        string approved = File.Exists(path) ? File.ReadAllText(path).ReplaceLineEndings("\n") : "(missing)";

        // To approve a change: PEERLINK_APPROVE_API=tests/PeerLink.Tests/TestData/api dotnet test --filter PublicApi, then review the diff.
        string? approveInto = Environment.GetEnvironmentVariable("PEERLINK_APPROVE_API");
        if (!string.IsNullOrEmpty(approveInto) && approved != actual)
        {
            File.WriteAllText(Path.Combine(approveInto, assemblyName + ".txt"), actual);
            return;
        }

        Assert.True(approved == actual, $"The public API of {assemblyName} changed. If that is intended, put this in tests/PeerLink.Tests/TestData/api/{assemblyName}.txt:\n{actual}");
    }

    [Theory]
    [InlineData("PeerLink")]
    [InlineData("PeerLink.Nat")]
    [InlineData("PeerLink.Discovery")]
    [InlineData("PeerLink.Rendezvous.Nats")]
    public void PublicClassesAreSealedOrStatic(string assemblyName)
    {
        // Abstract classes are allowed only when no other assembly can derive from them (no public or protected constructor).
        Type[] open = Assembly.Load(assemblyName).GetExportedTypes()
            .Where(t => t.IsClass && !t.IsSealed && !(t.IsAbstract && t.IsSealed))
            .Where(t => !t.IsAbstract || t.GetConstructors(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance).Any(c => c.IsPublic || c.IsFamily || c.IsFamilyOrAssembly))
            .ToArray();
        Assert.Empty(open);
    }

    internal static string Describe(Assembly assembly)
    {
        var text = new StringBuilder();
        foreach (Type type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            string kind = type.IsEnum ? "enum" : type.IsInterface ? "interface" : type.IsValueType ? "struct" : type.IsAbstract && type.IsSealed ? "static class" : "class";
            text.Append(kind).Append(' ').Append(type.FullName).Append('\n');
            const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            var members = type.GetMembers(flags)
                .Where(m => m is not MethodInfo { IsSpecialName: true } || m.Name.StartsWith("op_", StringComparison.Ordinal))
                .Select(m => "  " + m.MemberType + " " + m)
                .OrderBy(s => s, StringComparer.Ordinal);
            foreach (string member in members)
            {
                text.Append(member).Append('\n');
            }
        }

        return text.ToString();
    }
}
