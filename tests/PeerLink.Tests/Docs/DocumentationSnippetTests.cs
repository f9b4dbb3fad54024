using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Xunit;

namespace PeerLink.Tests.Docs;

/// <summary>
/// The code the README and docs/ show is code that compiles: each block marked <c>&lt;!-- snippet: NAME --&gt;</c> must
/// be, character for character, a snippet of docs/snippets (which the solution builds; the quick start also runs in
/// a functional test). eng/update-doc-snippets.py copies a changed snippet into the pages.
/// </summary>
public sealed partial class DocumentationSnippetTests
{
    private static readonly string Root = FindRoot();

    public static TheoryData<string> Pages()
    {
        var pages = new TheoryData<string>();
        foreach (string page in PageNames())
        {
            pages.Add(page);
        }

        return pages;
    }

    private static IEnumerable<string> PageNames() =>
        new[] { "README.md" }.Concat(Directory.GetFiles(Path.Combine(Root, "docs"), "*.md").Select(p => Path.GetRelativePath(Root, p)).Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(Pages))]
    public void EveryMarkedBlockIsTheCompiledSnippet(string page)
    {
        Dictionary<string, string> snippets = Snippets();
        string text = File.ReadAllText(Path.Combine(Root, page)).ReplaceLineEndings("\n");
        foreach (Match block in MarkedBlock().Matches(text))
        {
            string name = block.Groups[1].Value;
            Assert.True(snippets.ContainsKey(name), $"{page} shows snippet '{name}', which docs/snippets does not define");
            Assert.True(snippets[name] == block.Groups[2].Value, $"{page}: the block of snippet '{name}' is not the compiled code; run python3 eng/update-doc-snippets.py");
        }
    }

    [Fact]
    public void EverySnippetIsShownAndEveryFeaturePageHasOne()
    {
        string all = string.Concat(PageNames().Select(p => File.ReadAllText(Path.Combine(Root, p))));
        HashSet<string> shown = [.. MarkedBlock().Matches(all.ReplaceLineEndings("\n")).Select(m => m.Groups[1].Value)];
        Assert.Empty(Snippets().Keys.Except(shown));

        // The README's quick start is the program docs/snippets/QuickStart, which a functional test runs.
        Assert.Contains("quickstart", shown);
        foreach (string page in new[] { "getting-started.md", "messagepack.md", "discovery.md", "nat-traversal.md", "stun.md", "rendezvous-tier.md", "hosting.md", "observability.md" })
        {
            Assert.Matches(MarkedBlock(), File.ReadAllText(Path.Combine(Root, "docs", page)).ReplaceLineEndings("\n"));
        }
    }

    private static Dictionary<string, string> Snippets()
    {
        string snippetRoot = Path.Combine(Root, "docs", "snippets");
        var snippets = new Dictionary<string, string>
        {
            ["quickstart"] = File.ReadAllText(Path.Combine(snippetRoot, "QuickStart", "Program.cs")).ReplaceLineEndings("\n").TrimEnd('\n'),
        };
        foreach (string file in Directory.GetFiles(snippetRoot, "*.cs", SearchOption.AllDirectories).Where(f => !f.Contains("/obj/", StringComparison.Ordinal) && !f.Contains("/bin/", StringComparison.Ordinal)))
        {
            foreach (Match m in SnippetSource().Matches(File.ReadAllText(file).ReplaceLineEndings("\n")))
            {
                snippets.Add(m.Groups[1].Value, Dedent(m.Groups[2].Value));
            }
        }

        return snippets;
    }

    private static string Dedent(string code)
    {
        string[] lines = code.TrimEnd('\n').Split('\n');
        int indent = lines.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return string.Join('\n', lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
    }

    private static string FindRoot()
    {
        // tests/PeerLink.Tests/bin/<configuration>/<framework>/ → the repository
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "PeerLink.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("The repository root (PeerLink.sln) is not above the test's folder.");
    }

    [GeneratedRegex(@"<!-- snippet: (\S+) -->\n```csharp\n(.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex MarkedBlock();

    [GeneratedRegex(@"^[ \t]*// begin-snippet: (\S+)\n(.*?)^[ \t]*// end-snippet", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex SnippetSource();
}
